from spacehooks.cli import main

main()
