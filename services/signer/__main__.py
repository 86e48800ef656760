from services.signer.server import main

main()
