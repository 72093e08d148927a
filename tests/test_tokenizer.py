import pytest
from transformers import AutoTokenizer

from rlhf.errors import UserError
from rlhf.tokenizer import BOS, EOS, PAD, UNK, TokenizerConfig, build_tokenizer, load_tokenizer


def test_word_level_round_trip_with_bos(tmp_path):
    texts = ["the plot was superb .", "the acting was dreadful ."]
    build_tokenizer(texts, TokenizerConfig(), tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (tok.pad_token, tok.unk_token, tok.bos_token, tok.eos_token) == (PAD, UNK, BOS, EOS)
    ids = tok("the plot was dreadful .")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 6
    assert tok.decode(ids, skip_special_tokens=True) == "the plot was dreadful ."
    assert tok("the film", add_special_tokens=False)["input_ids"][1] == tok.unk_token_id
    assert len(tok) == 4 + 7


def test_padding_masks_pad_positions(tmp_path):
    tok = build_tokenizer(["a b c"], TokenizerConfig(), tmp_path)
    enc = tok(["a b c", "a"], padding=True)
    assert enc["attention_mask"] == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert enc["input_ids"][1][2:] == [tok.pad_token_id] * 2


def test_empty_corpus_and_missing_directory_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="empty corpus"):
        build_tokenizer([], TokenizerConfig(), tmp_path / "a")
    with pytest.raises(UserError, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_a_tokenizer_saved_left_padded_comes_back_right_padded(tmp_path):
    """TRL's trainers save the policy's tokenizer left-padded; every reader here indexes right-padded rows."""
    tok = build_tokenizer(["the movie was good"], TokenizerConfig(), tmp_path / "tok")
    tok.padding_side = "left"
    tok(["the", "the movie"], padding=True)  # as in sampling: the backend's padding is now left, and is saved so
    tok.save_pretrained(tmp_path / "tok")
    assert AutoTokenizer.from_pretrained(str(tmp_path / "tok")).padding_side == "left"
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.padding_side == "right"
    ids = loaded(["the movie", "the movie was good"], padding=True)["input_ids"]
    assert ids[0][-1] == loaded.pad_token_id and ids[1][-1] != loaded.pad_token_id


def test_the_saved_tokenizer_loads_without_transformers_5_class_names(tmp_path):
    """transformers 4 (and SAEDashboard, older TransformerLens) know no ``TokenizersBackend``."""
    from transformers import PreTrainedTokenizerFast

    from rlhf.rundir import read_json

    build_tokenizer(["the film was superb", "a dull plot"], TokenizerConfig(), tmp_path)
    assert read_json(tmp_path / "tokenizer_config.json")["tokenizer_class"] == "PreTrainedTokenizerFast"
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert fast("the film was superb").input_ids == auto("the film was superb").input_ids == load_tokenizer(tmp_path)(
        "the film was superb").input_ids
    assert fast.convert_ids_to_tokens(fast("a dull plot").input_ids) == [BOS, "a", "dull", "plot"]
