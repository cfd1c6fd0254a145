from cover_id.cli import main

main()
