using System.CommandLine;
using ParameterServer.Apps.Lda.Data;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver data gen-sparse` (LIBSVM data with known true weights), `gen-lda` (a corpus from known topics) and `bow-text` (a bag of words as text).</summary>
internal static class DataCommand
{
    private static Command GenLda()
    {
        var docs = PsOptions.Create("--docs", 1_000_000L, "Documents to generate");
        var vocabulary = PsOptions.Create("--vocab", 10_000, "Vocabulary size V");
        var topics = PsOptions.Create("--topics", 100, "Number of true topics K");
        var length = PsOptions.Create("--doc-length", 100, "Mean tokens per document");
        var alpha = PsOptions.Create("--alpha", 0.1, "Dirichlet prior of each document's topic mix");
        var beta = PsOptions.Create("--beta", 0.01, "Dirichlet prior of each topic's words");
        var seed = PsOptions.Create("--seed", 1, "Seed");
        var output = PsOptions.Create<string?>("--out", null, "Output docword file (UCI); OUT.vocab and OUT.topics (the true topics) beside it");
        var gen = new Command("gen-lda", "Generate a UCI bag-of-words corpus from a known LDA model (for lda's scale runs and topic recovery)")
        {
            docs, vocabulary, topics, length, alpha, beta, seed, output,
        };
        gen.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string path = p.GetValue(output) ?? throw new ArgumentException("gen-lda needs --out FILE");
            var spec = new LdaCorpusSpec
            {
                Documents = p.GetValue(docs), Vocabulary = p.GetValue(vocabulary), Topics = p.GetValue(topics), MeanLength = p.GetValue(length),
                Alpha = p.GetValue(alpha), Beta = p.GetValue(beta), Seed = p.GetValue(seed),
            };
            var progress = new ConsoleProgress();
            LdaGenerator.Write(spec, path, new Progress<double>(f => progress.Report(new JobProgress("generating", f))));
            progress.Clear();
            Console.Out.WriteLine($"wrote {spec.Documents:N0} documents to {path}, the vocabulary to {path}.vocab and the true topics to {path}.topics");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return gen;
    }

    private static Command BowText()
    {
        var vocabulary = PsOptions.Create<string?>("--vocab", null, "The vocabulary file, one word per line");
        var format = PsOptions.Create("--format", "uci", "uci (docword.txt, 1-based ids) or ldac");
        var output = PsOptions.Create<string?>("--out", null, "Output text file: one document per line, each word as many times as it occurs");
        var command = new Command("bow-text", "Expand a bag-of-words corpus (UCI or lda-c, with its vocabulary) into a text stream, e.g. for `pserver sketch ingest`")
        {
            AppOptions.Data, vocabulary, format, output,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("bow-text needs --data FILE and --vocab FILE");
            string path = p.GetValue(output) ?? throw new ArgumentException("bow-text needs --out FILE");
            var corpus = BagOfWords.Read(data, p.GetValue(format)!, p.GetValue(vocabulary) ?? throw new ArgumentException("bow-text needs --vocab FILE: the words to write"));
            var words = corpus.Vocabulary!;
            using (var writer = new StreamWriter(path + ".tmp", false, new System.Text.UTF8Encoding(false), 1 << 16))
            {
                for (int d = 0; d < corpus.Documents; d++)
                {
                    writer.WriteLine(string.Join(' ', corpus.Document(d).ToArray().Select(w => words[w])));
                }
            }
            File.Move(path + ".tmp", path, overwrite: true);
            Console.Out.WriteLine($"wrote {corpus.Documents:N0} documents, {corpus.Tokens:N0} words, to {path}");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command GenYt8m()
    {
        var videos = PsOptions.Create("--videos", 100_000, "Training videos to generate");
        var shards = PsOptions.Create("--shards", 8, "TFRecord files to spread them over (workers split the files)");
        var validation = PsOptions.Create("--validation-videos", 5_000, "Videos of the validation shard, scored by the true model");
        var noise = PsOptions.Create("--noise", 0.15, "Standard deviation of the latent noise (one label's signal has norm 1): higher makes the best achievable GAP lower");
        var latent = PsOptions.Create("--latent-dimensions", 128, "Dimensions of the latent space the labels' prototypes live in");
        var vocabulary = PsOptions.Create("--vocabulary", "../shared/data/youtube8m_meta/vocabulary.csv", "YouTube-8M's vocabulary.csv (labels, their frequencies and verticals)");
        var seed = PsOptions.Create("--seed", 1, "Seed");
        var output = PsOptions.Create<string?>("--out", null, "Output directory: train-NNNN.tfrecord, validate-0000.tfrecord, truth.json");
        var command = new Command("gen-yt8m", "Generate video-level YouTube-8M TFRecord shards from a known latent model, with the real vocabulary and label frequencies, and report the best achievable GAP")
        {
            videos, shards, validation, noise, latent, vocabulary, seed, output,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string directory = p.GetValue(output) ?? throw new ArgumentException("gen-yt8m needs --out DIR");
            var entities = Apps.Yt8m.Data.Vocabulary.Read(p.GetValue(vocabulary)!);
            var spec = new Apps.Yt8m.Data.Yt8mSpec { Videos = p.GetValue(videos), Shards = p.GetValue(shards), ValidationVideos = p.GetValue(validation), Noise = p.GetValue(noise), LatentDimensions = p.GetValue(latent), Seed = p.GetValue(seed) };
            var progress = new ConsoleProgress();
            var (gap, hit, perr) = Apps.Yt8m.Data.Yt8mGenerator.Write(spec, entities, directory, new Progress<double>(f => progress.Report(new JobProgress("generating", f))));
            progress.Clear();
            Console.Out.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"wrote {spec.Videos:N0} videos in {spec.Shards} shards and {spec.ValidationVideos:N0} validation videos to {directory}; the true model scores GAP@20 {gap:0.0000}, Hit@1 {hit:0.0000}, PERR {perr:0.0000} on them (truth.json)"));
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    public static Command Create()
    {
        var rows = PsOptions.Create("--rows", 1_000_000L, "Rows to generate");
        var features = PsOptions.Create("--features", 1_000_000, "Distinct feature ids (1..F)");
        var zipf = PsOptions.Create("--zipf", 1.1, "Power-law exponent of feature frequencies");
        var perRow = PsOptions.Create("--per-row", 20, "Nonzero features per row on average");
        var seed = PsOptions.Create("--seed", 1, "Seed of the true weights and the rows");
        var output = PsOptions.Create<string?>("--out", null, "Output file (the true weights go to OUT.weights)");
        var gen = new Command("gen-sparse", "Generate sparse LIBSVM data with power-law feature frequencies and known true weights")
        {
            rows, features, zipf, perRow, seed, output,
        };
        gen.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string path = p.GetValue(output) ?? throw new ArgumentException("gen-sparse needs --out FILE");
            var spec = new SparseDataSpec { Rows = p.GetValue(rows), Features = p.GetValue(features), Zipf = p.GetValue(zipf), FeaturesPerRow = p.GetValue(perRow), Seed = p.GetValue(seed) };
            var progress = new ConsoleProgress();
            SparseGenerator.Write(spec, path, new Progress<double>(f => progress.Report(new JobProgress("generating", f))));
            progress.Clear();
            Console.Out.WriteLine($"wrote {spec.Rows:N0} rows to {path} and the true weights to {path}.weights");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return new Command("data", "Data tools") { gen, GenLda(), BowText(), GenYt8m() };
    }
}
