import Support

func runObjectStoreBenchmark(_ arguments: CommandLineArguments) {
    print("objectstore benchmark: not yet implemented")
}
