from shardbeat.launch import main

raise SystemExit(main())
