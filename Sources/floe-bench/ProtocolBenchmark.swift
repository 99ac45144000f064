import Support

func runProtocolBenchmark(_ arguments: CommandLineArguments) {
    print("protocol benchmark: not yet implemented")
}
