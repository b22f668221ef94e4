"""`temporal` beyond the notebook's demos: the temporal Transformer under both layouts of open_clip's residual block
(sequence-first before open_clip 2.26 and whenever `batch_first=False`; batch-first otherwise), and the cap of
`PromptContrastLoss` on the number of classes contrasted per step."""
import inspect

import pytest
import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn

from efficient_video.config import ConfigError
from efficient_video.temporal import PromptContrastLoss, TemporalTransformer


def temporal(batch_first: bool, layers: int = 2) -> TemporalTransformer:
    "A small temporal Transformer whose blocks take `batch_first` (the same weights whatever the layout)."
    torch.manual_seed(0)
    tt = TemporalTransformer(width=32, frames=6, layers=layers, heads=4).eval()
    takes_flag = 'batch_first' in inspect.signature(ResidualAttentionBlock).parameters   # open_clip >= 2.26
    if not batch_first or not takes_flag:
        for i, blk in enumerate(tt.blocks):
            kw = {'batch_first': batch_first} if takes_flag else {}   # before 2.26 every block is sequence-first
            seq = ResidualAttentionBlock(32, 4, 4.0, act_layer=QuickGELU, **kw)
            seq.load_state_dict(blk.state_dict())
            tt.blocks[i] = seq.eval()
    assert tt.blocks[0].attn.batch_first == (batch_first and takes_flag)
    return tt


@pytest.mark.parametrize('batch_first', [True, False], ids=['batch-first', 'sequence-first'])
def test_a_clip_does_not_see_the_other_clips_of_its_batch(batch_first):
    tt = temporal(batch_first)
    torch.manual_seed(1)
    f = torch.randn(3, 6, 32)                                  # B×T×D, B != T
    g = f.clone(); g[1:] = torch.randn(2, 6, 32)               # the same first clip, other companions
    with torch.no_grad():
        alone, with_f, with_g = tt(f[:1])[0], tt(f)[0], tt(g)[0]
        torch.testing.assert_close(with_f, alone, rtol=0, atol=1e-5)
        torch.testing.assert_close(with_g, alone, rtol=0, atol=1e-5)
        # and both layouts compute the same function: attention runs over the T frames of each clip
        torch.testing.assert_close(tt.tokens(f), temporal(True).tokens(f), rtol=0, atol=1e-5)
        # (a check that can fail: frames do attend to each other, so changing one frame moves another's output)
        h = f.clone(); h[0, 5] = torch.randn(32)
        assert (tt.tokens(h)[0, 0] - tt.tokens(f)[0, 0]).abs().max() > 1e-3


class Scorer(nn.Module):
    "A stand-in video model with K classes: logits of the classes it is asked for, and a record of how many."
    def __init__(self, K: int):
        super().__init__()
        self.num_classes, self.w, self.asked = K, nn.Parameter(torch.randn(K, 4)), []
    def forward(self, x, classes=None):
        self.asked.append(None if classes is None else classes.tolist())
        w = self.w if classes is None else self.w[classes]
        return x.mean(1) @ w.T


def batch(labels):
    return {'video': torch.randn(len(labels), 2, 4), 'label': torch.tensor(labels), 'skipped': 0}


def test_contrast_is_capped_at_max_contrast():
    model, loss = Scorer(100), PromptContrastLoss((2, 4), max_contrast=20)
    for labels in (list(range(0, 50, 5)), list(range(20)), [3] * 8):           # 10, 20 and 1 distinct classes
        loss(model, batch(labels), torch.device('cpu'))
        asked = model.asked[-1]
        assert len(asked) == 20 and len(set(asked)) == 20 and set(labels) <= set(asked)


def test_a_batch_with_more_classes_than_max_contrast_is_refused():
    "100 classes, 30 distinct labels in the batch, max_contrast=20: a clear error, not 90 classes contrasted."
    model, loss = Scorer(100), PromptContrastLoss((2, 4), max_contrast=20)
    with pytest.raises(ConfigError, match='max_contrast=20: a batch holds 30 distinct classes'):
        loss(model, batch(list(range(30))), torch.device('cpu'))
    assert model.asked == []                                                     # refused before any forward
