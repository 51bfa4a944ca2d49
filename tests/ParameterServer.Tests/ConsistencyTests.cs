using ParameterServer.Client;
using ParameterServer.Client.Dispatch;

namespace ParameterServer.Tests;

public class ConsistencyTests
{
    [Fact]
    public void Window_tracks_the_oldest_incomplete_call_with_out_of_order_completions()
    {
        var window = new CompletionWindow();
        long a = window.Take(), b = window.Take(), c = window.Take();
        Assert.Equal(3, window.InFlight);
        window.Complete(c);
        Assert.Equal(a, window.OldestIncomplete);
        Assert.True(window.IsDone(c));
        Assert.False(window.IsDone(b));
        window.Complete(a);
        Assert.Equal(b, window.OldestIncomplete); // c is done but b is not
        window.Complete(b);
        Assert.Equal(0, window.InFlight);
        Assert.True(window.IsDone(a) && window.IsDone(b) && window.IsDone(c));
    }

    [Fact]
    public void Window_grows_past_its_initial_ring_without_losing_state()
    {
        var window = new CompletionWindow();
        var ids = Enumerable.Range(0, 1000).Select(_ => window.Take()).ToList();
        foreach (long id in ids.Where(i => i % 2 == 1))
        {
            window.Complete(id);
        }
        Assert.Equal(0, window.OldestIncomplete);
        Assert.All(ids, id => Assert.Equal(id % 2 == 1, window.IsDone(id)));
        foreach (long id in ids.Where(i => i % 2 == 0))
        {
            window.Complete(id);
        }
        Assert.Equal(1000, window.OldestIncomplete);
    }

    /// <summary>The rule the client applies: call k may start when InFlight &lt;= tau, i.e. calls up to k - tau - 1 are done.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4)]
    public void Bounded_delay_admits_a_call_only_when_calls_older_than_tau_are_done(int tau)
    {
        var window = new CompletionWindow();
        var issued = new List<long>();
        var random = new Random(tau);
        for (int step = 0; step < 2000; step++)
        {
            if (window.InFlight <= tau && random.Next(2) == 0)
            {
                long k = window.Take();
                // Invariant of bounded delay: every call <= k - tau - 1 has completed.
                for (long old = Math.Max(0, k - 64); old <= k - tau - 1; old++)
                {
                    Assert.True(window.IsDone(old), $"call {k} started while {old} was pending (tau {tau})");
                }
                issued.Add(k);
            }
            else if (issued.Count > 0)
            {
                int i = random.Next(issued.Count);
                window.Complete(issued[i]);
                issued.RemoveAt(i);
            }
        }
        Assert.True(window.Next > 100);
    }

    [Theory]
    [InlineData("sequential", 0)]
    [InlineData("eventual", int.MaxValue)]
    [InlineData("bounded:inf", int.MaxValue)]
    [InlineData("bounded:8", 8)]
    [InlineData(" Bounded:0 ", 0)]
    public void Consistency_parses(string text, int tau) => Assert.Equal(tau, Consistency.Parse(text).Tau);

    [Theory]
    [InlineData("bounded")]
    [InlineData("bounded:-1")]
    [InlineData("strong")]
    public void Bad_consistency_names_the_accepted_forms(string text) =>
        Assert.Contains("sequential, eventual or bounded:TAU", Assert.Throws<ArgumentException>(() => Consistency.Parse(text)).Message);

    [Fact]
    public void Consistency_prints_what_parses_back()
    {
        foreach (var c in new[] { Consistency.Sequential, Consistency.Eventual, Consistency.BoundedDelay(3) })
        {
            Assert.Equal(c, Consistency.Parse(c.ToString()));
        }
    }
}
