from retailstream.jobs.refine_events import main

raise SystemExit(main())
