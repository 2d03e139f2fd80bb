from shardbeat.cli import main

raise SystemExit(main())
