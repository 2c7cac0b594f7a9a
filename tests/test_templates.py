"""Chat-template models on local tokenizer fixtures that carry Llama-3.x-Instruct's and
Llama-2-chat's chat formats (written here, no download): the masks, the generation prompts, and
that the text scored is the text the reference (open-unlearning's ``apply_chat_template``) builds;
TOFU's rule -- the scored tokens are the answer's tokens as tokenized inside the full text --
holds where a prompt tokenized alone would mask the answer's first token."""
import json

import pytest

from tests.conftest import compose_cfg
from tests.tiny import tiny_llama
from unlearn.data import encode_qa
from unlearn.models import load_tokenizer
from unlearn.pipeline import run
from unlearn.templates import ChatTemplate, PromptTemplate, build_template
from unlearn.tokenizer import train_bpe_tokenizer

# Llama-3.x-Instruct's format: BOS, a system header with the knowledge cutoff and today's date,
# one header + content + <|eot_id|> per message, the assistant header as generation prompt
LLAMA3 = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# Llama-2-chat's: <s>[INST] q [/INST] a </s>
LLAMA2 = ("{%- for m in messages %}{%- if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] | trim + ' [/INST]' }}"
          "{%- elif m['role'] == 'assistant' %}{{ ' ' + m['content'] | trim + ' ' + eos_token }}{%- endif %}{%- endfor %}")
# a prompt that ends in a space, which the answer's first word takes into its token
SPACED = ("{%- for m in messages %}{%- if m['role'] == 'user' %}{{ bos_token + 'Question: ' + m['content'] + '\\n' }}"
          "{%- else %}{{ 'Answer: ' + m['content'] }}{%- endif %}{%- endfor %}"
          "{%- if add_generation_prompt %}{{ 'Answer: ' }}{%- endif %}")
TEXTS = ["Where was Ada born? Ada was born in Lima. The author wrote The Lima Trilogy. Answer: The",
         "What did the author write? The author wrote novels about Lima. You are a helpful assistant."] * 20
Q, A = "Where was Ada born?", "The author was born in Lima."
SYSTEM, DATE = "You are a helpful assistant.", "10 Apr 2025"


def chat_tokenizer(path, template, llama3=False):
    tok = train_bpe_tokenizer(TEXTS, 320, path)
    if llama3:
        tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    tok.chat_template = template
    tok.save_pretrained(path)
    return load_tokenizer(path)  # as a run loads it: the template travels with the tokenizer files


def scored(tok, feature):
    return tok.decode([t for t in feature["labels"] if t != -100])


def reference_ids(tok, messages, **kwargs):
    """open-unlearning's ``preprocess_chat_instance``: apply_chat_template(tokenize=True)."""
    return list(tok.apply_chat_template(messages, tokenize=True, **kwargs)["input_ids"])


def test_llama3_instruct_template(tmp_path):
    tok = chat_tokenizer(tmp_path / "llama3", LLAMA3, llama3=True)
    tpl = ChatTemplate(SYSTEM, DATE)
    f = encode_qa(tok, tpl, Q, A, max_length=500)
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q}, {"role": "assistant", "content": A}]
    # the text scored is the conversation the reference builds, token for token; the template's own
    # <|eot_id|> (the tokenizer's EOS) ends it, so no second EOS is appended
    assert f["input_ids"] == reference_ids(tok, chat, date_string=DATE)
    assert f["attention_mask"] == [1] * len(f["input_ids"])
    assert scored(tok, f) == A + "<|eot_id|>"
    text, ids = tpl.generation_prompt(tok, Q)
    assert ids == reference_ids(tok, chat[:-1], add_generation_prompt=True, date_string=DATE)
    assert ids == f["input_ids"][: f["labels"].count(-100)]  # the masked tokens are the generation prompt
    assert "Today Date: 10 Apr 2025" in text and SYSTEM in text and text.endswith("assistant<|end_header_id|>\n\n")
    # without a date string the template's own
    assert "Today Date: 26 Jul 2024" in ChatTemplate(SYSTEM).generation_prompt(tok, Q)[0]


def test_llama2_chat_template(tmp_path):
    tok = chat_tokenizer(tmp_path / "llama2", LLAMA2)
    f = encode_qa(tok, ChatTemplate(), Q, A, max_length=500)
    chat = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
    assert f["input_ids"] == reference_ids(tok, chat)
    assert scored(tok, f) == " " + A + " </s>" and f["attention_mask"][-1] == 1  # the template's own EOS
    assert tok.decode(ChatTemplate().generation_prompt(tok, Q)[1]) == f"<s>[INST] {Q} [/INST]"
    # TOFU's own Llama-2 configuration is the tags (no space before the answer): still the default
    tags = PromptTemplate("[INST] ", " [/INST]", "")
    g = encode_qa(tok, tags, Q, A, max_length=500)
    assert scored(tok, g) == A + "</s>" and g["attention_mask"][-1] == 0  # EOS appended, TOFU-style


def test_the_answer_is_scored_as_tokenized_inside_the_full_text(tmp_path):
    tok = chat_tokenizer(tmp_path / "spaced", SPACED)
    prompt, full = ChatTemplate().texts(tok, Q, A)
    assert prompt.endswith("Answer: ") and full == prompt + A
    alone = tok(prompt, add_special_tokens=False)["input_ids"]
    inside = tok(full, add_special_tokens=False)["input_ids"]
    assert inside[: len(alone)] != alone  # the prompt's last space went into the answer's first token
    f = encode_qa(tok, ChatTemplate(), Q, A, max_length=500)
    assert scored(tok, f) == " " + A + "</s>"  # every answer token scored, its first one included
    # the rule that tokenizes the prompt alone would have masked the answer's first token
    assert f["labels"].count(-100) < len(alone)


def test_template_config_and_clear_failures(tmp_path):
    assert build_template({"chat": True, "system_prompt": SYSTEM, "date_string": DATE}) == ChatTemplate(SYSTEM, DATE)
    assert build_template({"question_start_tag": "Q: ", "question_end_tag": "\n", "answer_tag": "A: "}) == \
        PromptTemplate("Q: ", "\n", "A: ")
    plain = train_bpe_tokenizer(TEXTS, 320, tmp_path / "plain")
    with pytest.raises(ValueError, match="has no chat template"):
        encode_qa(plain, ChatTemplate(), Q, A, max_length=64)


def test_a_chat_template_run_end_to_end(tmp_path):
    """A local checkpoint whose tokenizer has Llama-3's chat format: unlearning, evaluation and
    generation all use the template (the logged generation prompt is the assistant header)."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "tofu_real"
    tok = chat_tokenizer(tmp_path / "ckpt", LLAMA3, llama3=True)
    model = tiny_llama()
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(tmp_path / "ckpt")
    # max_length leaves answer tokens after the long chat prompt (this tokenizer never saw the
    # fixture's words): the fixture has TOFU's holdout01, and its MIA needs scored answers
    cfg = compose_cfg([f"paths.root={tmp_path / 'out'}", "dataset=tofu", "dataset.source=local",
                       f"dataset.path={fixture}", "dataset.split=forget01", "model=hf",
                       f"model.target={tmp_path / 'ckpt'}", f"model.retain={tmp_path / 'ckpt'}", "model.max_length=192",
                       "model.template.chat=true", f"model.template.system_prompt={SYSTEM}",
                       f"model.template.date_string={DATE}", "method.batch_size=2", "method.max_steps=1",
                       "eval.generation.max_length=224", "eval.generation.max_new_tokens=8"])
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    prompt, _, gt = rec["metrics"]["unlearned"]["logs"]["forget"]["generated_text"]["0"]
    assert prompt.startswith("<|begin_of_text|>") and prompt.endswith("assistant<|end_header_id|>\n\n")
    assert "Today Date: 10 Apr 2025" in prompt and gt
    assert json.loads(json.dumps(rec["metrics"]["target"]["summary"]))["n_items"]["forget"] > 0
