namespace ParameterServer.Hosting;

/// <summary>A data file that cannot be used (any app's): names the file and, for a bad line, its number.</summary>
public sealed class DataFormatException(string message) : UsageException(message)
{
    public static DataFormatException AtLine(string path, long line, string problem) => new($"{path}:{line}: {problem}");
}
