from radis_mlx.cli.main import main

main()
