from retailstream.jobs.retrain import main

raise SystemExit(main())
