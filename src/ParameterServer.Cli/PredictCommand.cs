using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg;
using ParameterServer.Apps.Mnist;
using ParameterServer.Apps.Yt8m;
using ParameterServer.Apps.Yt8m.Data;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver predict`: scores a LIBSVM file with a model written by --model-out.</summary>
internal static class PredictCommand
{
    private static readonly Option<string?> Model = PsOptions.Create<string?>("--model", null, "Model file written by `pserver train logreg|mnist|yt8m --model-out`");
    private static readonly Option<int> Top = PsOptions.Create("--top", 5, "yt8m: tags printed per video");

    public static Command Create()
    {
        var command = new Command("predict", "Score test data with a trained model: a LIBSVM file (logreg), the MNIST test set of an idx directory (mnist), or YouTube-8M shards (yt8m: each video's top tags by name)")
        {
            Model, LogRegAppDefinition.Data, LogRegAppDefinition.SkipBadLines, MnistAppDefinition.TestLimit, Top, Yt8mAppDefinition.VocabularyFile, Yt8mAppDefinition.SkipBadRecords, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string model = p.GetValue(Model) ?? throw new ArgumentException("predict needs --model FILE");
            string data = p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("predict needs --data FILE (or DIR for an mnist model)");
            if (!File.Exists(model))
            {
                throw new ArgumentException($"--model '{model}' does not exist");
            }
            if (MnistPredictor.IsModelFile(model) && Yt8mPredictor.IsYt8mSpec(Nn.ModelFile.ReadSpec(model)))
            {
                return Task.FromResult(PredictYt8m(p, model, data));
            }
            if (MnistPredictor.IsModelFile(model))
            {
                return Task.FromResult(PredictMnist(model, data, p.GetValue(MnistAppDefinition.TestLimit), p.GetValue(PsOptions.Json)));
            }
            var (metrics, rows, unknown) = Predictor.Score(ModelFile.Read(model), data, p.GetValue(LogRegAppDefinition.SkipBadLines));
            if (unknown > 0)
            {
                Console.Error.WriteLine($"predict: {unknown} distinct features of {data} have no weight in the model (scored as 0)");
            }
            if (p.GetValue(PsOptions.Json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["app"] = "predict",
                    ["rows"] = rows,
                    ["test_accuracy"] = Math.Round(metrics.Accuracy, 6),
                    ["test_auc"] = Math.Round(metrics.Auc, 6),
                    ["test_logloss"] = Math.Round(metrics.LogLoss, 6),
                    ["unknown_features"] = unknown,
                }));
            }
            else
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{rows:N0} rows: accuracy {metrics.Accuracy * 100:0.00}%, AUC {metrics.Auc:0.0000}, logloss {metrics.LogLoss:0.0000}"));
            }
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static int PredictYt8m(ParseResult p, string model, string data)
    {
        bool json = p.GetValue(PsOptions.Json);
        int top = p.GetValue(Top);
        if (top < 1)
        {
            throw new ArgumentException($"--top must be at least 1, got {top}");
        }
        var vocabulary = Vocabulary.Read(p.GetValue(Yt8mAppDefinition.VocabularyFile)!);
        var output = Console.Out;
        var evaluation = Yt8mPredictor.Predict(model, data, vocabulary, top, p.GetValue(Yt8mAppDefinition.SkipBadRecords), (id, tags) => output.WriteLine(json
            ? JsonSerializer.Serialize(new Dictionary<string, object> { ["id"] = id, ["tags"] = tags.Select(t => new Dictionary<string, object> { ["name"] = t.Entity.Name, ["p"] = Math.Round(t.Probability, 4) }).ToList() })
            : $"{id}: {string.Join(", ", tags.Select(t => string.Create(CultureInfo.InvariantCulture, $"{t.Entity.Name} {t.Probability:0.00}")))}"));
        output.WriteLine(json
            ? JsonSerializer.Serialize(new Dictionary<string, object> { ["app"] = "predict", ["model"] = Nn.ModelFile.ReadSpec(model), ["videos"] = evaluation.Videos, ["gap"] = Math.Round(evaluation.Gap(), 4), ["hit_at_1"] = Math.Round(evaluation.HitAt1, 4), ["perr"] = Math.Round(evaluation.Perr, 4) })
            : string.Create(CultureInfo.InvariantCulture, $"{evaluation.Videos:N0} videos: GAP@20 {evaluation.Gap():0.0000}, Hit@1 {evaluation.HitAt1:0.0000}, PERR {evaluation.Perr:0.0000} against their labels"));
        return ExitCodes.Ok;
    }

    private static int PredictMnist(string model, string data, int limit, bool json)
    {
        var (accuracy, loss, images, spec) = MnistPredictor.Score(model, data, limit);
        Console.Out.WriteLine(json
            ? JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["app"] = "predict",
                ["model"] = spec,
                ["images"] = images,
                ["test_accuracy"] = Math.Round(accuracy, 6),
                ["test_loss"] = Math.Round(loss, 6),
            })
            : string.Create(CultureInfo.InvariantCulture, $"{images:N0} test images: {spec} accuracy {accuracy * 100:0.00}%, loss {loss:0.0000}"));
        return ExitCodes.Ok;
    }
}
