namespace ParameterServer.IntegrationTests;

/// <summary>Tests that start process clusters run one at a time: the machines have two cores.</summary>
[CollectionDefinition("processes", DisableParallelization = true)]
public sealed class ProcessCollection;
