using System.Text.Json;
using ParameterServer.Apps.Counter;

namespace ParameterServer.Tests;

public class CounterSummaryTests
{
    [Fact]
    public void The_local_summary_counts_a_drained_workers_shorter_line_as_nothing_checked()
    {
        JsonElement Line(string json) => JsonDocument.Parse(json).RootElement.Clone();
        var results = new[]
        {
            Line("""{"app":"counter","ok":true,"keys":1000,"pushes":80,"mismatches":0,"seconds":1.5}"""),
            Line("""{"app":"counter","ok":true,"checked":false,"joined_late":false,"drained":true,"rank":1,"keys":1000,"pushes":20,"completions":100,"resent_slices":0}"""),
        };
        var output = new StringWriter();
        int code = new CounterAppDefinition().SummarizeLocal(results, 2, output);
        Assert.Equal(0, code);
        using var summary = JsonDocument.Parse(output.ToString());
        Assert.Equal(100, summary.RootElement.GetProperty("pushes").GetInt64());
        Assert.Equal(0, summary.RootElement.GetProperty("mismatches").GetInt64());
        Assert.Equal(1.5, summary.RootElement.GetProperty("seconds").GetDouble());
    }
}
