using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Server;

namespace ParameterServer.Tests;

/// <summary>One extension style: handlers, pull filters and push filters are registered and resolved the same way.</summary>
public class ExtensionRegistryTests
{
    private sealed class Doubling : IUpdateHandler
    {
        public int StateLength(int width) => 0;

        public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
        {
            for (int i = 0; i < width; i++)
            {
                row[i] += 2 * pushed[i];
            }
        }
    }

    private sealed class KeepEven : IPushFilter
    {
        public void Filter(ReadOnlySpan<ulong> keys, Span<float> values, int width, Span<bool> keep)
        {
            for (int i = 0; i < keys.Length; i++)
            {
                keep[i] = keys[i] % 2 == 0;
            }
        }
    }

    [Fact]
    public void Registered_extensions_are_created_from_their_spec_and_built_ins_still_resolve()
    {
        string? seen = null;
        var registry = new ExtensionRegistry()
            .AddHandler("double", spec => { seen = spec; return new Doubling(); })
            .AddPushFilter("even", _ => new KeepEven())
            .AddPullFilter("never", _ => new SignificantlyModifiedPullFilter(float.MaxValue));
        Assert.IsType<Doubling>(registry.CreateHandler("double:factor=2"));
        Assert.Equal("double:factor=2", seen);
        Assert.IsType<KeepEven>(registry.CreatePushFilter("even"));
        Assert.IsType<SignificantlyModifiedPullFilter>(registry.CreatePullFilter("never"));
        Assert.Contains("double", registry.HandlerNames);
        Assert.Contains("ftrl", registry.HandlerNames);
        Assert.Null(registry.CreatePullFilter("none"));
        Assert.Null(registry.CreatePushFilter("none"));
        Assert.IsType<SignificantlyModifiedFilter>(registry.CreatePushFilter("sigmod:0.5"));
        Assert.NotNull(registry.CreateHandler("ftrl:alpha=0.1,l1=1"));
    }

    [Fact]
    public void Built_in_names_cannot_be_replaced_and_unknown_names_say_what_is_accepted()
    {
        var registry = new ExtensionRegistry();
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => registry.AddHandler("sum", _ => new Doubling())).Message);
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => registry.AddPushFilter("kkt", _ => new KeepEven())).Message);
        Assert.Throws<ArgumentException>(() => registry.AddPullFilter("a:b", _ => new SignificantlyModifiedPullFilter(0)));
        Assert.Contains("not registered", Assert.Throws<ArgumentException>(() => registry.CreatePullFilter("mine:1")).Message);
        Assert.Contains("unknown filter", Assert.Throws<ArgumentException>(() => registry.CreatePushFilter("mine")).Message);
    }

    [Fact]
    public void Server_options_register_through_their_registry()
    {
        var options = new ServerOptions().AddHandler("double", _ => new Doubling());
        Assert.Contains("double", options.Extensions.HandlerNames);
        Assert.IsType<Doubling>(options.Extensions.CreateHandler("double"));
    }

    [Fact]
    public void A_table_definition_has_one_codec_that_keeps_every_field_including_its_element_type()
    {
        var spec = new TableSpec("emb", 8) { Handler = "adam", Mode = UpdateMode.Sync, DenseSize = 4096, BlockKeys = 64, PullFilter = "sigmod:0.01" };
        var info = TableInfo.From(7, spec);
        var w = new PayloadWriter();
        info.WriteDefinition(w);
        var r = new PayloadReader(w.WrittenSpan);
        var back = TableInfo.ReadDefinition(ref r, 7);
        Assert.Equal(info, back);
        Assert.Equal(ElementType.Float32, back.Element);
        Assert.True(back.SameDefinition(spec));
        Assert.Equal(spec, ControlMessages.ReadTableSpec(w.WrittenSpan));
        Assert.False(back.SameDefinition(spec with { ElementType = ElementType.Int32 }));
    }

    [Fact]
    public void Tables_of_other_element_types_are_refused_with_what_is_supported()
    {
        var ex = Assert.Throws<ArgumentException>(() => new TableSpec("counts") { ElementType = ElementType.Float64 }.Validate());
        Assert.Contains("float32, int32 or int64", ex.Message);
        var handler = Assert.Throws<ArgumentException>(() => new TableSpec("counts") { ElementType = ElementType.Int64, Handler = "ftrl" }.Validate());
        Assert.Contains("int64 table 'counts' takes handler sum", handler.Message);
    }
}
