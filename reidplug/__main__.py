from reidplug.cli import main

main()
