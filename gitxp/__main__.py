from gitxp.cli import main

main()
