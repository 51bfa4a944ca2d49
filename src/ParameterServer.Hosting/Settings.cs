using System.Globalization;
using System.Text.Json;

namespace ParameterServer.Hosting;

/// <summary>
/// Where option values come from when they are not on the command line: a PS_* environment variable
/// (--heartbeat-ms reads PS_HEARTBEAT_MS), then the JSON config file (--config FILE or PS_CONFIG; keys are
/// option names without dashes, e.g. {"scheduler": "10.0.0.1:9700", "heartbeat-ms": 200}), then the default.
/// </summary>
public static class Settings
{
    private static Dictionary<string, JsonElement>? s_config;
    private static string? s_configPath;

    /// <summary>Loads the config file named by --config (or PS_CONFIG) before parsing, so defaults can come from it.</summary>
    public static void Load(string[] args)
    {
        int index = Array.IndexOf(args, "--config");
        string? path = index >= 0 && index + 1 < args.Length ? args[index + 1] : Environment.GetEnvironmentVariable("PS_CONFIG");
        if (string.IsNullOrEmpty(path))
        {
            return;
        }
        if (!File.Exists(path))
        {
            throw new ArgumentException($"config file '{path}' does not exist");
        }
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            s_config = doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone(), StringComparer.OrdinalIgnoreCase);
            s_configPath = path;
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"config file '{path}' is not valid JSON: {ex.Message}");
        }
    }

    /// <summary>The variable an option can be set by: --heartbeat-ms reads PS_HEARTBEAT_MS.</summary>
    public static string EnvironmentName(string option) => "PS_" + option.TrimStart('-').Replace('-', '_').ToUpperInvariant();

    /// <summary>The option's value from the environment, else the config file, else <paramref name="fallback"/>; throws <see cref="ArgumentException"/> naming the source of a bad value.</summary>
    public static T Get<T>(string option, T fallback)
    {
        string env = EnvironmentName(option);
        if (Environment.GetEnvironmentVariable(env) is { Length: > 0 } text)
        {
            return Convert<T>(text, $"environment variable {env}");
        }
        if (s_config is not null && s_config.TryGetValue(option.TrimStart('-'), out var element))
        {
            string raw = element.ValueKind == JsonValueKind.String ? element.GetString()! : element.GetRawText();
            return Convert<T>(raw, $"'{option.TrimStart('-')}' in config file {s_configPath}");
        }
        return fallback;
    }

    private static T Convert<T>(string text, string source)
    {
        var type = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
        try
        {
            object value = type == typeof(string) ? text
                : type == typeof(bool) ? bool.Parse(text)
                : type.IsEnum ? Enum.Parse(type, text, ignoreCase: true)
                : System.Convert.ChangeType(text, type, CultureInfo.InvariantCulture);
            return (T)value;
        }
        catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException or ArgumentException)
        {
            throw new ArgumentException($"{source} = '{text}' is not a valid {type.Name}");
        }
    }
}
