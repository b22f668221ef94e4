"""`prompt_learning` on the open_clip variants the notebook does not show: every kind of text projection, no causal
mask, both Transformer layouts (open_clip >= 2.26 and the sequence-first one of older versions), CustomTextCLIP,
bf16 towers, towers that are refused, a learner inside a parent module (copy, checkpoint round trip) and one whose
vectors are fixed (`learn=False`)."""
import copy
import inspect

import open_clip
import pytest
import torch
from open_clip.transformer import CustomResidualAttentionBlock, ResidualAttentionBlock, TextTransformer, Transformer
from torch import nn

import efficient_video.prompt_learning as pl
from efficient_video.clip import load_clip
from efficient_video.core import freeze
from efficient_video.prompt_learning import PromptLearner, encode_text_embeddings

SENTENCES = ['a photo of a t-shirt.', 'an ankle boot', 'bag']


def tower(**kw) -> TextTransformer:
    torch.manual_seed(0)
    args = dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=2, output_dim=16)
    return TextTransformer(**{**args, **kw}).eval()


def assert_matches_encode_text(model, context_length=16):
    ids = open_clip.tokenize(SENTENCES, context_length=context_length)
    with torch.no_grad():
        ours = encode_text_embeddings(model, model.token_embedding(ids), ids.argmax(-1))
        ref = model.encode_text(ids) if hasattr(model, 'encode_text') else model(ids)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize('kw', [dict(), dict(proj_bias=True), dict(proj_type='none', output_dim=32),
                                dict(no_causal_mask=True)], ids=['parameter', 'linear', 'none', 'no-causal-mask'])
def test_text_transformer_variants(kw):
    assert_matches_encode_text(tower(**kw))


def test_transformer_with_batch_first_false_is_still_called_batch_first():
    "open_clip >= 2.26: a Transformer(batch_first=False) transposes inside its forward, so the caller passes K×L×D."
    t = tower()
    seq_first = Transformer(32, 2, 2, batch_first=False)
    seq_first.load_state_dict(t.transformer.state_dict())
    t.transformer = seq_first.eval()
    assert_matches_encode_text(t)


class TransformerBefore226(nn.Module):
    """open_clip's Transformer before 2.26: no `batch_first` attribute, blocks built sequence-first, and a forward that
    hands its input to them as it is, so the caller must pass L×K×D (2.24's forward, around current blocks)."""
    def __init__(self, resblocks: nn.ModuleList):
        super().__init__()
        self.resblocks = resblocks
    def get_cast_dtype(self): return self.resblocks[0].mlp.c_fc.weight.dtype
    def forward(self, x, attn_mask=None):
        for r in self.resblocks:
            x = r(x, attn_mask=attn_mask)
        return x


def transformer_before_226(t: TextTransformer) -> TransformerBefore226:
    "`t`'s Transformer, the same weights, as open_clip before 2.26 built it."
    seq_first = Transformer(32, 2, 2, batch_first=False)
    seq_first.load_state_dict(t.transformer.state_dict())
    assert seq_first.resblocks[0].attn.batch_first is False
    return TransformerBefore226(seq_first.resblocks)


@pytest.mark.parametrize('has_version', [False, True], ids=['no-__version__-as-2.24', 'a-current-__version__'])
def test_a_transformer_from_before_2_26_gets_l_k_d(monkeypatch, has_version):
    "The layout is read from the model: open_clip 2.24 has no `open_clip.__version__`, and a version says nothing."
    t = tower()
    with torch.no_grad():
        ids = open_clip.tokenize(SENTENCES, context_length=16)
        ref = t(ids)
        t.transformer = transformer_before_226(t)
        if not has_version:
            monkeypatch.delattr(open_clip, '__version__')
        out = encode_text_embeddings(t, t.token_embedding(ids), ids.argmax(-1))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


class BlocksOnly(nn.Module):
    "A Transformer without the `batch_first` attribute, as in open_clip 4.x: it runs its blocks on what it is given."
    def __init__(self, *blocks):
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)


def test_the_layout_is_read_from_the_model():
    "`takes_batch_first` on every kind of Transformer and block, whatever the installed version."
    t = tower()
    assert pl.takes_batch_first(Transformer(32, 1, 2))                        # 2.26 to 3.x: batch-first ...
    assert pl.takes_batch_first(Transformer(32, 1, 2, batch_first=False))     # ... whatever the flag says
    assert not pl.takes_batch_first(transformer_before_226(t))                # before 2.26: what its blocks take
    assert pl.takes_batch_first(ResidualAttentionBlock(32, 2))
    assert not pl.takes_batch_first(ResidualAttentionBlock(32, 2, batch_first=False))
    assert pl.takes_batch_first(CustomResidualAttentionBlock(32, 2))          # open_clip's own attention
    assert pl.takes_batch_first(BlocksOnly(CustomResidualAttentionBlock(32, 2)))   # 4.x: no flag anywhere
    assert pl.takes_batch_first(BlocksOnly())                                 # no blocks: nothing to permute for


def test_custom_text_clip_uses_its_text_tower():
    text_cfg = dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1)
    vision_cfg = dict(image_size=32, patch_size=8, width=32, layers=1, head_width=16)
    model = open_clip.CustomTextCLIP(16, vision_cfg, text_cfg).eval()
    ids = open_clip.tokenize(SENTENCES, context_length=16)
    with torch.no_grad():
        ours = encode_text_embeddings(model, model.text.token_embedding(ids), ids.argmax(-1))
        torch.testing.assert_close(ours, model.encode_text(ids), rtol=0, atol=1e-6)


@pytest.mark.parametrize('kw, message', [(dict(pool_type='last'), "pool_type='last'"),
                                         (dict(use_pad_mask=True, no_causal_mask=True), 'padding mask'),
                                         (dict(embed_cls=True), 'cls_emb')])
def test_unsupported_towers_are_refused(kw, message):
    missing = set(kw) - set(inspect.signature(TextTransformer).parameters)
    if missing: pytest.skip(f"this open_clip's TextTransformer has no {sorted(missing)} (added after {open_clip.__version__})")
    with pytest.raises((NotImplementedError, ValueError), match=message):
        encode_text_embeddings(tower(**kw), torch.zeros(1, 4, 32), torch.tensor([3]))


def test_bf16_tower_matches_encode_text():
    model = load_clip('ev-tiny-vit', precision='bf16').model
    tok = open_clip.get_tokenizer('ev-tiny-vit')
    names = ['t-shirt', 'coat', 'ankle boot']
    learner = PromptLearner(model.token_embedding, tok, 32, names, prefix=4, postfix=1,
                            init_prefix='a photo of a', init_postfix='.')
    assert learner.prompt_vectors.dtype == torch.float32   # the learned vectors stay in full precision
    with torch.no_grad():
        ours = encode_text_embeddings(model, *learner())
        ref = model.encode_text(tok([f'a photo of a {c}.' for c in names]))
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, ref)


def _parent(names, **kw):
    "What the video model does: a module that owns the frozen CLIP and a prompt learner on its token embedding."
    bundle = load_clip('ev-tiny-vit')
    parent = nn.Module()
    parent.clip = freeze(bundle.model)
    parent.prompts = PromptLearner(parent.clip.token_embedding, bundle.tokenizer, 32, names, prefix=2, postfix=2, **kw)
    return bundle, parent


def test_learner_inside_a_parent_module():
    "What the video model will do: own the CLIP and the learner; copy it, save and reload its trainable state."
    names = ['t-shirt', 'coat', 'bag']
    bundle, parent = _parent(names)
    twin = copy.deepcopy(parent)
    assert twin.prompts.token_embedding is twin.clip.token_embedding   # the reference follows the copy
    assert twin.prompts.token_embedding is not parent.clip.token_embedding
    state = {k: v for k, v in parent.state_dict().items() if k.startswith('prompts.')}
    assert list(state) == ['prompts.prompt_vectors']
    fresh = PromptLearner(bundle.model.token_embedding, bundle.tokenizer, 32, names, prefix=2, postfix=2)
    fresh.load_state_dict({'prompt_vectors': state['prompts.prompt_vectors']})
    for a, b in zip(fresh(), parent.prompts()):
        assert torch.equal(a, b)


def test_fixed_vectors_inside_a_parent_module():
    "`learn=False`: a buffer under the same key, so a checkpoint of either kind loads into the other; nothing trains it."
    names = ['t-shirt', 'coat', 'bag']
    bundle, parent = _parent(names, init_prefix='a photo', learn=False)
    assert [n for n, p in parent.named_parameters() if p.requires_grad] == []
    assert [k for k in parent.state_dict() if k.startswith('prompts.')] == ['prompts.prompt_vectors']
    twin = copy.deepcopy(parent)
    assert 'prompt_vectors' in dict(twin.prompts.named_buffers())
    learned = PromptLearner(bundle.model.token_embedding, bundle.tokenizer, 32, names, prefix=2, postfix=2)
    learned.load_state_dict({'prompt_vectors': parent.prompts.prompt_vectors})
    parent.prompts.load_state_dict(learned.state_dict())
    assert torch.equal(parent.prompts.prompt_vectors, learned.prompt_vectors)
    x, _ = parent.prompts()
    assert not x.requires_grad
    assert not encode_text_embeddings(parent.clip, *parent.prompts()).requires_grad


def test_tokenizer_without_encode_is_refused():
    bundle = load_clip('ev-tiny-vit')
    with pytest.raises(TypeError, match='has no .encode'):
        PromptLearner(bundle.model.token_embedding, lambda texts: None, 32, ['coat'], prefix=2, postfix=2)
