from vcl.cli.app import main

main()
