from ldm_cli.cli import main

main()
