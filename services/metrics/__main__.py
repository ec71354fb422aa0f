from services.metrics.app import main

main()
