from retailstream.jobs.enrich_events import main

raise SystemExit(main())
