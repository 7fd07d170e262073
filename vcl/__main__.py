from vcl.cli.entry import main

main()
