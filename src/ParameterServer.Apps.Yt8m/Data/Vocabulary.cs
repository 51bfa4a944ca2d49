using System.Globalization;
using System.Text;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Yt8m.Data;

/// <summary>One of YouTube-8M's entities: its label id, how many training videos carry it, its name and first vertical.</summary>
public sealed record Entity(int Index, long TrainVideoCount, string Name, string Vertical);

/// <summary>YouTube-8M's vocabulary.csv (Index, TrainVideoCount, KnowledgeGraphId, Name, WikiUrl, Vertical1-3, WikiDescription; quoted fields may hold commas, quotes and line breaks).</summary>
public static class Vocabulary
{
    /// <summary>The entities by index; a malformed row is a <see cref="DataFormatException"/> naming the file and line.</summary>
    public static IReadOnlyList<Entity> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new DataFormatException($"vocabulary '{path}' does not exist (YouTube-8M's vocabulary.csv, e.g. ../shared/data/youtube8m_meta/vocabulary.csv)");
        }
        var entities = new List<Entity>();
        using var reader = new StreamReader(path, Encoding.UTF8);
        long line = 0;
        var header = NextRow(reader, ref line) ?? throw DataFormatException.AtLine(path, 1, "the file is empty");
        int index = header.IndexOf("Index"), count = header.IndexOf("TrainVideoCount"), name = header.IndexOf("Name"), vertical = header.IndexOf("Vertical1");
        if (index < 0 || count < 0 || name < 0 || vertical < 0)
        {
            throw DataFormatException.AtLine(path, 1, $"the header needs Index, TrainVideoCount, Name and Vertical1; it has {string.Join(", ", header)}");
        }
        while (true)
        {
            long at = line + 1;
            var row = NextRow(reader, ref line);
            if (row is null)
            {
                break;
            }
            if (row.Count < header.Count)
            {
                throw DataFormatException.AtLine(path, at, $"{row.Count} fields where the header has {header.Count}");
            }
            if (!int.TryParse(row[index], NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id != entities.Count
                || !long.TryParse(row[count], NumberStyles.None, CultureInfo.InvariantCulture, out long videos))
            {
                throw DataFormatException.AtLine(path, at, $"expected index {entities.Count} and a video count, got '{row[index]}' and '{row[count]}'");
            }
            entities.Add(new Entity(id, videos, row[name], row[vertical]));
        }
        if (entities.Count == 0)
        {
            throw DataFormatException.AtLine(path, 2, "the vocabulary has no entities");
        }
        return entities;
    }

    // One CSV record (RFC 4180 quoting); null at the end of the file.
    private static List<string>? NextRow(TextReader reader, ref long line)
    {
        string? text = reader.ReadLine();
        if (text is null)
        {
            return null;
        }
        line++;
        var fields = new List<string>();
        var field = new StringBuilder();
        bool quoted = false;
        int i = 0;
        while (true)
        {
            if (i == text.Length)
            {
                if (!quoted)
                {
                    fields.Add(field.ToString());
                    return fields;
                }
                text = reader.ReadLine() ?? throw new DataFormatException($"line {line}: a quoted field runs to the end of the file");
                line++;
                field.Append('\n');
                i = 0;
                continue;
            }
            char c = text[i++];
            if (quoted)
            {
                if (c == '"' && i < text.Length && text[i] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    field.Append(c);
                }
            }
            else if (c == '"')
            {
                quoted = true;
            }
            else if (c == ',')
            {
                fields.Add(field.ToString());
                field.Clear();
            }
            else
            {
                field.Append(c);
            }
        }
    }
}
