using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver predict`: scores a LIBSVM file with a model written by --model-out.</summary>
internal static class PredictCommand
{
    private static readonly Option<string?> Model = PsOptions.Create<string?>("--model", null, "Model file written by `pserver train logreg --model-out`");

    public static Command Create()
    {
        var command = new Command("predict", "Score a LIBSVM file with a trained logistic regression model") { Model, LogRegAppDefinition.Data, LogRegAppDefinition.SkipBadLines, PsOptions.Json };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string model = p.GetValue(Model) ?? throw new ArgumentException("predict needs --model FILE");
            string data = p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("predict needs --data FILE");
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
}
