"""The sentence bank of the demo corpus: what its speakers say.

Text carries *valence*. Some sentences belong to one emotion ("I can't stand
this anymore."), negative ones are shared by angry and sad, mild ones by
neutral and happy, and short ambiguous ones ("Are you serious?") by all four,
so the transcript alone cannot tell every class apart.
"""

from __future__ import annotations

# Sentences that only ever occur under one emotion.
EMOTION_SENTENCES = {
    "neutral": (
        "The meeting starts at ten.",
        "I'll take the bus to work tomorrow.",
        "The store closes at nine on Sundays.",
        "Please put the files on my desk.",
        "I need to renew my passport.",
        "The train leaves from platform four.",
        "Can you pass me the salt?",
        "I parked the car behind the building.",
        "We have a test on Thursday.",
        "The report is due next week.",
        "My sister lives in Chicago.",
        "I usually have coffee in the morning.",
        "The printer is on the second floor.",
        "Let me check my calendar.",
        "The forms are in the top drawer.",
        "I'm going to the post office.",
        "Dinner is at seven.",
        "Turn left at the next light.",
        "The package arrived this afternoon.",
        "I'll call you when I get there.",
    ),
    "angry": (
        "I can't stand this anymore.",
        "Get out of my way right now.",
        "You lied to me again!",
        "Don't you dare touch my things.",
        "I told you a hundred times to stop!",
        "This is absolutely ridiculous.",
        "Who do you think you are?",
        "Stop interrupting me!",
        "I'm sick of your excuses.",
        "You never listen to a word I say.",
        "Give me back my money.",
        "How dare you talk to me like that?",
        "I'm done covering for you.",
        "Shut the door and get out!",
        "That's the last time you humiliate me.",
        "You broke it on purpose, didn't you?",
        "Keep your hands off my car!",
        "I want to speak to your manager.",
        "Nobody treats me like this!",
        "You wasted my whole afternoon!",
    ),
    "sad": (
        "I miss her so much.",
        "Nobody came to the funeral.",
        "I just feel empty inside.",
        "He's never coming back, is he?",
        "I lost my job today.",
        "I don't have anyone to talk to.",
        "Everything reminds me of him.",
        "The dog died last night.",
        "I tried so hard and it wasn't enough.",
        "I haven't slept in days.",
        "We used to be so close.",
        "I wish I could go back.",
        "She didn't even say goodbye.",
        "I feel so alone in this house.",
        "It's been a year and it still hurts.",
        "My grandfather passed away.",
        "I cried the whole way home.",
        "Nothing matters without you.",
        "They forgot my birthday again.",
        "I can't stop thinking about him.",
    ),
    "happy": (
        "This is the best day ever!",
        "We won the championship!",
        "I got the job!",
        "I'm so happy for you!",
        "We're having a baby!",
        "I can't wait to see you tonight!",
        "She said yes!",
        "That was the most fun I've had in years.",
        "I passed all my exams!",
        "You made my whole week!",
        "We're going to Hawaii!",
        "I love this song so much!",
        "Look, it's snowing outside!",
        "Happy birthday, you look amazing!",
        "I finally finished the marathon!",
        "This cake is delicious!",
        "Everything worked out perfectly.",
        "I'm so proud of us.",
        "You remembered, that's so sweet!",
        "We got the house!",
    ),
}

# Sentences shared by the emotions of one valence: the words say "negative"
# or "mild", the voice has to say how strongly.
VALENCE_SENTENCES = {
    ("angry", "sad"): (
        "Why does this always happen to me?",
        "I can't believe you did that.",
        "This isn't fair.",
        "You promised me.",
        "I don't want to talk about it.",
        "Just leave me alone.",
        "It's all ruined now.",
        "How could you do this to me?",
        "I trusted you.",
        "Nothing ever goes right.",
        "You weren't there when I needed you.",
        "It's over.",
        "I waited for hours.",
        "You always do this.",
        "I'm not okay.",
        "They cancelled it again.",
        "It wasn't supposed to end like this.",
        "I gave you everything.",
        "Don't say that.",
        "Why didn't anyone tell me?",
    ),
    ("neutral", "happy"): (
        "Sounds good.",
        "Sure, I can do that.",
        "That works for me.",
        "We're meeting them on Friday.",
        "I'll see you tomorrow then.",
        "It's a nice day outside.",
        "The results came in.",
        "They're coming over for dinner.",
        "I got a letter from Sarah.",
        "We're going to the beach this weekend.",
        "The new place has a big kitchen.",
        "I talked to my mom today.",
        "Let's get lunch.",
        "That's a good idea.",
        "The movie starts at eight.",
        "I just got home.",
        "We finished the project.",
        "My brother is visiting next week.",
        "Okay, let's do it.",
        "I heard the news.",
    ),
}

# Sentences any emotion may carry; only the voice tells them apart.
AMBIGUOUS_SENTENCES = (
    "Okay, if you say so.",
    "Thank you for telling me.",
    "Are you serious right now?",
    "I really don't know what to say.",
    "Well, here we are again.",
    "Oh my god, look at this.",
    "So that's what happened.",
    "I didn't expect that.",
    "Is that all?",
    "You did what?",
    "Tell me everything.",
    "I heard what you said.",
    "We need to talk.",
    "It's him again.",
    "What just happened?",
    "Wow, I can't believe it.",
)

# Share of each emotion's utterances drawn from its own sentences, from the
# sentences of its valence, and from the ambiguous ones. A perfect text-only
# classifier scores about 0.40 + 0.35 / 2 + 0.25 / 4 = 0.64.
SENTENCE_KIND_SHARES = {"emotion": 0.40, "valence": 0.35, "ambiguous": 0.25}


def sentence_pools(label: str) -> dict[str, tuple[str, ...]]:
    """The sentences `label` draws from, by kind (the keys of SENTENCE_KIND_SHARES)."""
    valence = next(s for emotions, s in VALENCE_SENTENCES.items() if label in emotions)
    return {
        "emotion": EMOTION_SENTENCES[label],
        "valence": valence,
        "ambiguous": AMBIGUOUS_SENTENCES,
    }
