using System.Runtime.CompilerServices;
using ParameterServer.Transport;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// Every cluster these tests start is closed, as a deployed job is: one secret for the run, set before any node or
/// client exists, so in-process nodes, the pserver processes (they inherit PS_SECRET_FILE) and the tools all prove it.
/// The tests that need a node without it (or with another) say so in the child's environment.
/// </summary>
internal static class JobSecretSetup
{
    [ModuleInitializer]
    internal static void Install() => JobSecret.EnsureForLocalJob();
}
