from retailstream.jobs.build_views import main

raise SystemExit(main())
