from pysvm.cli import main

raise SystemExit(main())
