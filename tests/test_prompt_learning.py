"""`prompt_learning` on the open_clip variants the notebook does not show: every kind of text projection, no causal
mask, both Transformer layouts (open_clip >= 2.26 and the sequence-first one of older versions), CustomTextCLIP,
bf16 towers, towers that are refused, and a learner inside a parent module (copy, checkpoint round trip). Also: the
symbol tables of the prompt-learning and temporal chapters name code that exists."""
import ast
import builtins
import copy
import inspect
import json
import re
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.transformer import TextTransformer, Transformer
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


class OldTransformer(nn.Module):
    "open_clip < 2.26: no `batch_first` attribute, expects L×K×D (emulated around a current Transformer)."
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def get_cast_dtype(self): return self.inner.get_cast_dtype()
    def forward(self, x, attn_mask=None):
        assert x.shape[1] == len(SENTENCES), "an old Transformer must receive L×K×D"
        return self.inner(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)


def test_old_open_clip_layout_is_permuted(monkeypatch):
    t = tower()
    with torch.no_grad():
        ids = open_clip.tokenize(SENTENCES, context_length=16)
        ref = t(ids)
        t.transformer = OldTransformer(t.transformer)
        monkeypatch.setattr(open_clip, '__version__', '2.24.0')
        out = encode_text_embeddings(t, t.token_embedding(ids), ids.argmax(-1))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    monkeypatch.setattr(open_clip, '__version__', '4.2.0.dev0')   # 4.x: no attribute, but batch-first again
    assert not pl._sequence_first(t.transformer)


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


def test_learner_inside_a_parent_module():
    "What the video model will do: own the CLIP and the learner; copy it, save and reload its trainable state."
    bundle = load_clip('ev-tiny-vit')
    names = ['t-shirt', 'coat', 'bag']
    parent = nn.Module()
    parent.clip = freeze(bundle.model)
    parent.prompts = PromptLearner(parent.clip.token_embedding, bundle.tokenizer, 32, names, prefix=2, postfix=2)
    twin = copy.deepcopy(parent)
    assert twin.prompts.token_embedding is twin.clip.token_embedding   # the reference follows the copy
    assert twin.prompts.token_embedding is not parent.clip.token_embedding
    state = {k: v for k, v in parent.state_dict().items() if k.startswith('prompts.')}
    assert list(state) == ['prompts.prompt_vectors']
    fresh = PromptLearner(bundle.model.token_embedding, bundle.tokenizer, 32, names, prefix=2, postfix=2)
    fresh.load_state_dict({'prompt_vectors': state['prompts.prompt_vectors']})
    for a, b in zip(fresh(), parent.prompts()):
        assert torch.equal(a, b)


def test_tokenizer_without_encode_is_refused():
    bundle = load_clip('ev-tiny-vit')
    with pytest.raises(TypeError, match='has no .encode'):
        PromptLearner(bundle.model.token_embedding, lambda texts: None, 32, ['coat'], prefix=2, postfix=2)


def _symbol_table_names(nb_name: str) -> tuple[list[str], set[str]]:
    "(the Python names used in the `code` column of notebook `nb_name`'s symbol table, every name its code defines or uses)"
    cells = json.loads((Path(__file__).parents[1]/'nbs'/nb_name).read_text())['cells']
    known = set(dir(builtins))
    for c in cells:
        if c['cell_type'] != 'code': continue
        src = '\n'.join(l for l in ''.join(c['source']).splitlines() if not l.lstrip().startswith(('%', '!', '#|')))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Name): known.add(node.id)
            elif isinstance(node, ast.Attribute): known.add(node.attr)
            elif isinstance(node, ast.arg): known.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)): known.add(node.name)
            elif isinstance(node, ast.alias): known.add((node.asname or node.name).split('.')[0])
    table = next(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown' and '| symbol |' in ''.join(c['source']))
    used = []
    for row in table.split('| symbol |', 1)[1].splitlines()[2:]:
        if not row.startswith('|'): break
        for span in re.findall(r'`([^`]+)`', row.rstrip(' |').rsplit('|', 1)[-1]):
            try: tree = ast.parse(span)
            except SyntaxError: continue                  # a shape such as `K×L×D`, not code
            used += [n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(tree)
                     if isinstance(n, (ast.Name, ast.Attribute))]
    return used, known


@pytest.mark.parametrize('nb_name', ['10_prompt_learning.ipynb', '11_temporal.ipynb'])
def test_symbol_table_names_real_code(nb_name):
    "Every name in the `code` column of the notebook's symbol table is defined or used by the notebook's code."
    used, known = _symbol_table_names(nb_name)
    assert used, 'no symbol table found'
    assert [n for n in used if n not in known] == []
