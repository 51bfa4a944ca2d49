using ParameterServer.Apps.Yt8m;
using ParameterServer.Apps.Yt8m.Data;

namespace ParameterServer.Tests.Yt8m;

/// <summary>Both yt8m models start out predicting each label's frequency, not 0.5 for all 3,862.</summary>
public class PriorBiasTests
{
    [Theory]
    [InlineData("logistic")]
    [InlineData("moe")]
    public void An_untrained_model_predicts_the_labels_priors_for_a_featureless_video(string kind)
    {
        const int labels = 5;
        var model = Yt8mModels.Create(kind, experts: 2, labels, batch: 1);
        model.Initialize(3);
        // Label 0 on 2 of 4 videos, label 1 on 1, label 2 on 3, labels 3 and 4 never (half a video's prior). The
        // mixture's experts can carry priors up to 0.66 (0.99 of the 2 in 3 the gates give them).
        Yt8mModels.SetPriorBiases(model, [[0, 1], [0, 2], [2], [2]]);
        var logits = model.Forward(new float[Video.FeatureSize], 1).ToArray();
        double[] expected = [0.5, 0.25, kind == "moe" ? 0.66 : 0.75, 0.125, 0.125];
        for (int c = 0; c < labels; c++)
        {
            Assert.Equal(expected[c], 1 / (1 + Math.Exp(-logits[c])), 4);
        }
    }
}
