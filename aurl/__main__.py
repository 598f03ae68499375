from aurl.cli import main

raise SystemExit(main())
