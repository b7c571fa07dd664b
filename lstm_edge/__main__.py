from lstm_edge.cli import main

raise SystemExit(main())
