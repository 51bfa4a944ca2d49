using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg;
using ParameterServer.Apps.Mnist;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver predict`: scores a LIBSVM file with a model written by --model-out.</summary>
internal static class PredictCommand
{
    private static readonly Option<string?> Model = PsOptions.Create<string?>("--model", null, "Model file written by `pserver train logreg|mnist --model-out`");

    public static Command Create()
    {
        var command = new Command("predict", "Score test data with a trained model: a LIBSVM file (logreg) or the MNIST test set of an idx directory (mnist)")
        {
            Model, LogRegAppDefinition.Data, LogRegAppDefinition.SkipBadLines, MnistAppDefinition.TestLimit, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string model = p.GetValue(Model) ?? throw new ArgumentException("predict needs --model FILE");
            string data = p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("predict needs --data FILE (or DIR for an mnist model)");
            if (!File.Exists(model))
            {
                throw new ArgumentException($"--model '{model}' does not exist");
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
