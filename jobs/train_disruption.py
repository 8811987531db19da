from retailstream.jobs.train_disruption import main

raise SystemExit(main())
