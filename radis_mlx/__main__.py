from radis_mlx.cli import main

main()
