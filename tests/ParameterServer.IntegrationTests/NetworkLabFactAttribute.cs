using ParameterServer.Hosting.Network;

namespace ParameterServer.IntegrationTests;

/// <summary>A test that needs a <see cref="NetworkLab"/>: skipped, saying why, where network namespaces cannot be made.</summary>
internal sealed class NetworkLabFactAttribute : FactAttribute
{
    public NetworkLabFactAttribute()
    {
        if (NetworkLab.Unavailable is { } why)
        {
            Skip = $"needs network namespaces: {why}";
        }
    }
}
