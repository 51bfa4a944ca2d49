namespace ParameterServer.Nn.Layers;

/// <summary>Max pooling over non-overlapping size x size windows (stride = size); a partial window at the edge is dropped.</summary>
public sealed class MaxPool2d : Layer
{
    private int[] _argmax = [];

    public MaxPool2d(int size = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        Size = size;
    }

    public int Size { get; }

    internal override string Kind => "pool";

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch)
    {
        var output = new FeatureShape(input.Channels, input.Height / Size, input.Width / Size);
        if (output.Height < 1 || output.Width < 1)
        {
            throw new ArgumentException($"{Name}: a {Size}x{Size} window does not fit an input of {input}");
        }
        _argmax = new int[maxBatch * output.Size];
        return output;
    }

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        int height = InputShape.Height, width = InputShape.Width;
        int outHeight = OutputShape.Height, outWidth = OutputShape.Width;
        int planes = batch * InputShape.Channels;
        int o = 0;
        for (int p = 0; p < planes; p++)
        {
            int planeStart = p * height * width;
            for (int oy = 0; oy < outHeight; oy++)
            {
                for (int ox = 0; ox < outWidth; ox++, o++)
                {
                    int best = planeStart + (oy * Size * width) + (ox * Size);
                    float max = x[best];
                    for (int i = 0; i < Size; i++)
                    {
                        int line = planeStart + (((oy * Size) + i) * width) + (ox * Size);
                        for (int j = 0; j < Size; j++)
                        {
                            if (x[line + j] > max)
                            {
                                max = x[line + j];
                                best = line + j;
                            }
                        }
                    }
                    y[o] = max;
                    _argmax[o] = best;
                }
            }
        }
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        if (dx.IsEmpty)
        {
            return;
        }
        dx[..(batch * InputShape.Size)].Clear();
        int outputs = batch * OutputShape.Size;
        for (int o = 0; o < outputs; o++)
        {
            dx[_argmax[o]] += dy[o];
        }
    }
}
