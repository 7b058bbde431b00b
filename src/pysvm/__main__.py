from pysvm.cli.main import main

raise SystemExit(main())
