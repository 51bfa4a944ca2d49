namespace ParameterServer.Hosting;

/// <summary>
/// Children of `pserver local` get PS_EXIT_WITH_PARENT=1 and a pipe as standard input: when the launcher dies,
/// the pipe closes and the child exits, so no orphaned nodes are left behind.
/// </summary>
public static class ParentWatch
{
    /// <summary>Set to 1 by a launcher for its children.</summary>
    public const string Variable = "PS_EXIT_WITH_PARENT";

    /// <summary>When <see cref="Variable"/> is 1: exits (code 130) once standard input closes, that is when the launcher died.</summary>
    public static void StartIfRequested()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1")
        {
            return;
        }
        var thread = new Thread(() =>
        {
            try
            {
                while (Console.In.ReadLine() is not null)
                {
                }
            }
            catch (IOException)
            {
            }
            Environment.Exit(ExitCodes.Interrupted);
        })
        { IsBackground = true, Name = "ps-parent-watch" };
        thread.Start();
    }
}
