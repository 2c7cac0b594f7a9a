"""open-unlearning's released TOFU models as configs (conf/model/ou_*.yaml) and their experiments
(conf/experiment/ou_*_forget*.yaml), composed only -- nothing is downloaded: the Hub ids of the target
and of each split's retain model, the loading settings and the recipe, and that the chat template
builds the text open-unlearning's ``preprocess_chat_instance`` builds (on the local Llama-3-style
tokenizer fixture of tests/test_templates.py)."""
import pytest

from eval.compat import apply_compat
from tests.conftest import compose_cfg, sampled
from tests.test_recipes import assert_recipe
from tests.test_templates import DATE, LLAMA3, SYSTEM, A, Q, chat_tokenizer, reference_ids
from unlearn.data import encode_qa
from unlearn.templates import ChatTemplate, build_template

# our model name -> open-unlearning's model name (configs/model/<name>.yaml, the Hub ids' middle part)
MODELS = {"ou_llama32_1b": "Llama-3.2-1B-Instruct", "ou_llama32_3b": "Llama-3.2-3B-Instruct",
          "ou_llama31_8b": "Llama-3.1-8B-Instruct"}
SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}  # scripts/tofu_unlearn.sh
EXPERIMENTS = [(m, s) for m in MODELS for s in SPLITS]


@pytest.mark.parametrize("model, split", EXPERIMENTS)
def test_every_experiment_is_the_released_model_and_open_unlearnings_recipe(model, split):
    ou = MODELS[model]
    cfg = compose_cfg([f"experiment={model}_{split}"])
    assert (cfg.model.name, cfg.dataset.name, cfg.dataset.split, cfg.method.name) == (model, "tofu", split, "ngdiff")
    assert cfg.model.target == f"open-unlearning/tofu_{ou}_full"
    assert cfg.model.retain == f"open-unlearning/tofu_{ou}_{SPLITS[split]}"
    assert cfg.model.tokenizer == f"meta-llama/{ou}"
    assert (cfg.model.dtype, cfg.model.attn_implementation, cfg.model.max_length) == ("bfloat16", "sdpa", 512)
    assert cfg.model.revision is None and cfg.model.source == "pretrained"
    template = cfg.model.template
    assert (template.chat, template.system_prompt, template.date_string) == (True, SYSTEM, DATE)
    assert build_template(template) == ChatTemplate(SYSTEM, DATE)
    assert_recipe(cfg, "tofu_open_unlearning")  # lr, epochs, batch 4 x 32, 512 tokens, bf16-mixed, warmup


@pytest.mark.parametrize("model", sampled(list(MODELS), list(MODELS)[:1]))
def test_the_retain_model_follows_the_split_and_the_headers_switches_compose(model):
    ou = MODELS[model]
    cfg = compose_cfg([f"experiment={model}_forget01", "dataset.split=forget10"])
    assert cfg.model.retain == f"open-unlearning/tofu_{ou}_retain90"
    # the switches each experiment's header names: TOFU's recipe, the automatic rate, open-unlearning's eval
    assert_recipe(compose_cfg([f"experiment={model}_forget05", "recipe=tofu"]), "tofu")
    gen = compose_cfg([f"experiment={model}_forget05", "scheduler=gen"])
    assert gen.scheduler.name == "gen" and gen.method.lr == 1e-5
    ou_eval = apply_compat(compose_cfg([f"experiment={model}_forget10", "eval.compat=open_unlearning"]))
    assert ou_eval.eval.ds_size is None and ou_eval.eval.generation.mode == "new_tokens"
    # the gated tokenizer's fallback
    own = compose_cfg([f"experiment={model}_forget10", f"model.tokenizer=open-unlearning/tofu_{ou}_full"])
    assert own.model.tokenizer == own.model.target


@pytest.fixture(scope="module")
def llama3_tokenizer(tmp_path_factory):
    return chat_tokenizer(tmp_path_factory.mktemp("llama3"), LLAMA3, llama3=True)


def open_unlearning_item(tok, question, answer):
    """preprocess_chat_instance with the template_args of configs/model/Llama-3.x-*-Instruct.yaml
    (apply_chat_template, system prompt, date string): the ids, the labels and the generation input."""
    chat = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    ids = reference_ids(tok, chat, date_string="10 Apr 2025")
    prompt = reference_ids(tok, chat[:-1], add_generation_prompt=True, date_string="10 Apr 2025")
    if ids[-1] != tok.eos_token_id:
        ids.append(tok.eos_token_id)
    return ids, [-100] * len(prompt) + ids[len(prompt):], prompt


@pytest.mark.parametrize("model", MODELS)
def test_the_template_renders_as_open_unlearnings(model, llama3_tokenizer):
    tok = llama3_tokenizer
    template = build_template(compose_cfg([f"experiment={model}_forget10"]).model.template)
    feature = encode_qa(tok, template, Q, A, max_length=512)
    ids, labels, prompt = open_unlearning_item(tok, Q, A)
    assert feature["input_ids"] == ids and feature["labels"] == labels
    text, gen_ids = template.generation_prompt(tok, Q)
    assert gen_ids == prompt  # predict_with_generate's input_ids
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    assert "Today Date: 10 Apr 2025\n\nYou are a helpful assistant.<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
