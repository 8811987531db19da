from retailstream.jobs.serving_views import main

raise SystemExit(main())
