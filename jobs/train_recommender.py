from retailstream.jobs.train_recommender import main

raise SystemExit(main())
