from services.segmenter.app import main

main()
