from retailstream.jobs.score_shipments import main

raise SystemExit(main())
