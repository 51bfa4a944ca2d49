using System.Diagnostics;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using ParameterServer.Scheduler;

namespace ParameterServer.Hosting;

/// <summary>
/// A scheduler's state in etcd, with an election among the job's schedulers (`pserver scheduler --etcd`): the one that
/// holds the key <c>/pserver/JOB/leader</c> (bound to its lease) is active; the others wait, and the first to put the
/// key once the lease expires takes over, resuming from <c>/pserver/JOB/state</c>. Fencing: the active one considers
/// itself active only until its last confirmed lease renewal plus most of the lease's TTL, so it has stopped before
/// etcd lets a standby in; and every save is a transaction that succeeds only while the leader key is still its own.
/// </summary>
public sealed class EtcdSchedulerStore : ISchedulerStateStore, IAsyncDisposable
{
    private readonly EtcdClient _etcd;
    private readonly string _endpoints, _leaderKey, _stateKey, _me;
    private readonly TimeSpan _ttl;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private long _lease;
    private long _confirmedAt; // Stopwatch timestamp of the send of the last renewal etcd confirmed
    private Task _keepAlive = Task.CompletedTask;

    private EtcdSchedulerStore(string endpoints, string job, string me, TimeSpan ttl, ILogger log)
    {
        _endpoints = endpoints;
        _etcd = new EtcdClient(endpoints);
        _leaderKey = $"/pserver/{job}/leader";
        _stateKey = $"/pserver/{job}/state";
        _me = me;
        _ttl = ttl;
        _log = log;
    }

    public string Location => $"etcd {_endpoints} {_stateKey}";

    /// <summary>Active while the last confirmed renewal was sent less than two thirds of the TTL ago.</summary>
    public bool IsActive => Stopwatch.GetElapsedTime(Volatile.Read(ref _confirmedAt)) < _ttl * 2 / 3;

    /// <summary>
    /// Returns once this scheduler (<paramref name="me"/>: the address nodes reach it at) is the job's active one:
    /// at once if no other holds the leadership, else when the active one's lease expires. Retries an unreachable
    /// etcd, saying so once.
    /// </summary>
    public static async Task<EtcdSchedulerStore> AcquireAsync(string endpoints, string job, string me, TimeSpan ttl, ILogger log, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ttl, TimeSpan.FromSeconds(1));
        var store = new EtcdSchedulerStore(endpoints, job, me, ttl, log);
        try
        {
            await store.ElectAsync(cancellationToken).ConfigureAwait(false);
            return store;
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task ElectAsync(CancellationToken cancellationToken)
    {
        string? saidStandby = null;
        bool saidUnreachable = false;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                if (_lease == 0)
                {
                    long sent = Stopwatch.GetTimestamp();
                    var grant = await _etcd.LeaseGrantAsync(new LeaseGrantRequest { TTL = (long)Math.Ceiling(_ttl.TotalSeconds) }, cancellationToken: cancellationToken).ConfigureAwait(false);
                    _lease = grant.ID;
                    Volatile.Write(ref _confirmedAt, sent);
                    _keepAlive = Task.Run(() => KeepAliveAsync(_stop.Token), CancellationToken.None);
                }
                var txn = new TxnRequest();
                txn.Compare.Add(new Compare { Key = ByteString.CopyFromUtf8(_leaderKey), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
                txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(_leaderKey), Value = ByteString.CopyFromUtf8(_me), Lease = _lease } });
                txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8(_leaderKey) } });
                var answer = await _etcd.TransactionAsync(txn, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (answer.Succeeded)
                {
                    _log.LogInformation("This scheduler ({Me}) is the active one of job key {Key} in etcd {Endpoints}", _me, _leaderKey, _endpoints);
                    return;
                }
                string active = answer.Responses[0].ResponseRange.Kvs.FirstOrDefault()?.Value.ToStringUtf8() ?? "?";
                if (active != saidStandby)
                {
                    _log.LogWarning("Standby: the scheduler at {Active} is active; this one ({Me}) takes over when its etcd lease ({Seconds:0.#} s) expires", active, _me, _ttl.TotalSeconds);
                    saidStandby = active;
                }
                saidUnreachable = false;
            }
            catch (RpcException ex)
            {
                if (!saidUnreachable)
                {
                    _log.LogWarning("Cannot reach etcd at {Endpoints} ({Message}); retrying", _endpoints, ex.Status.Detail);
                    saidUnreachable = true;
                }
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Renews the lease every third of its TTL, recording when each confirmed renewal was sent.</summary>
    private async Task KeepAliveAsync(CancellationToken stop)
    {
        var period = _ttl / 3;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using var call = _etcd.GetConnection().LeaseClient.LeaseKeepAlive(cancellationToken: stop);
                while (!stop.IsCancellationRequested)
                {
                    long sent = Stopwatch.GetTimestamp();
                    await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = _lease }, stop).ConfigureAwait(false);
                    if (!await call.ResponseStream.MoveNext(stop).ConfigureAwait(false))
                    {
                        break;
                    }
                    if (call.ResponseStream.Current.TTL <= 0)
                    {
                        _log.LogError("The etcd lease of this scheduler expired: it is no longer the active one");
                        return; // IsActive turns false; the scheduler stops
                    }
                    Volatile.Write(ref _confirmedAt, sent);
                    await Task.Delay(period, stop).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex)
            {
                _log.LogWarning("Renewing the etcd lease failed ({Message}); retrying", ex.Status.Detail);
                await Task.Delay(TimeSpan.FromMilliseconds(100), CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    public byte[]? Load()
    {
        var answer = _etcd.Get(new RangeRequest { Key = ByteString.CopyFromUtf8(_stateKey) });
        return answer.Kvs.Count == 0 ? null : answer.Kvs[0].Value.ToByteArray();
    }

    public void Save(byte[] snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (!IsActive)
        {
            throw new PsException(PsErrorCode.Conflict, $"this scheduler's etcd lease lapsed (no renewal confirmed within {_ttl.TotalSeconds * 2 / 3:0.#} s)");
        }
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = ByteString.CopyFromUtf8(_leaderKey), Target = Compare.Types.CompareTarget.Value, Result = Compare.Types.CompareResult.Equal, Value = ByteString.CopyFromUtf8(_me) });
        txn.Compare.Add(new Compare { Key = ByteString.CopyFromUtf8(_leaderKey), Target = Compare.Types.CompareTarget.Lease, Result = Compare.Types.CompareResult.Equal, Lease = _lease });
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(_stateKey), Value = ByteString.CopyFrom(snapshot) } });
        TxnResponse answer;
        try
        {
            answer = _etcd.Transaction(txn);
        }
        catch (RpcException ex)
        {
            throw new IOException($"etcd at {_endpoints}: {ex.Status.Detail}", ex);
        }
        if (!answer.Succeeded)
        {
            throw new PsException(PsErrorCode.Conflict, $"the leader key {_leaderKey} is no longer this scheduler's ({_me}): another scheduler took over");
        }
    }

    /// <summary>Stops renewing and gives the leadership up (a standby takes over at once instead of after the TTL).</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _keepAlive.ConfigureAwait(false);
            if (_lease != 0)
            {
                await _etcd.LeaseRevokeAsync(new LeaseRevokeRequest { ID = _lease }, deadline: DateTime.UtcNow.AddSeconds(2)).ConfigureAwait(false);
            }
        }
        catch (RpcException)
        {
            // etcd is gone: the lease expires on its own
        }
        _etcd.Dispose();
        _stop.Dispose();
    }
}
