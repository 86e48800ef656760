from services.quota.server import main

main()
