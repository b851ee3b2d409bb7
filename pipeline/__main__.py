from pipeline._cli.main import main

raise SystemExit(main())
