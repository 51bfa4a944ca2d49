using System.CommandLine;
using ParameterServer.Hosting;
using ParameterServer.Transport;

namespace ParameterServer.Cli;

/// <summary>`pserver secret --out FILE`: a new job secret for --secret-file / PS_SECRET_FILE.</summary>
internal static class SecretCommand
{
    private static readonly Option<string> Out = new("--out") { Description = "Where to write it (created, readable by its owner only; an existing file is not overwritten)", Required = true };

    public static Command Create()
    {
        var command = new Command("secret", "Write a new random job secret (32 bytes as hex) for --secret-file: give the same file to every node and tool of the job") { Out };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string path = p.GetValue(Out)!;
            try
            {
                JobSecret.Generate(path);
            }
            catch (IOException ex)
            {
                throw new ArgumentException($"cannot write the secret to '{path}': {ex.Message}", ex);
            }
            Console.Error.WriteLine($"wrote a new job secret to {path}: start every node and tool with --secret-file {path} (or PS_SECRET_FILE={path})");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }
}
