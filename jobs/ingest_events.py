from retailstream.jobs.ingest_events import main

raise SystemExit(main())
