"""Phrasings reserved for evaluation: one per family, never shown in ``train``/``rl``/``valid``.

The ``test_templates`` split states every seen family with the phrasing below *and* an input
variant reserved for test (see :data:`.shapes.Shape.reserved`), so both its statement and the
program that parses its input are new to the model. Kept in one place so that a reader can see
every held-out text at once. Each text is written in a style (a short story or a "your task"
sentence) that no training phrasing uses, and may hold ``{k}`` like the family's own phrasings.

Limits: the catalogue checks that every family has exactly one entry here
(:func:`.catalog.with_reserved`); the texts are not checked for meaning.
"""

from __future__ import annotations

RESERVED_PHRASINGS: dict[str, str] = {
    # one integer n
    "int-times-k": "A machine makes every number {k} times as large. Your task is to print what it makes of n.",
    "int-plus-k": "A counter shows n. Your task is to print what it shows after {k} more clicks, each adding one.",
    "int-square": "A square field has side n. Your task is to find its area.",
    "int-cube": "A cube has edge n. Your task is to find its volume.",
    "int-parity": "Petya wrote down the number n. Help him tell whether it splits into two equal halves.",
    "int-digit-sum": "Vasya writes n on the board and then adds its digits together. What does he get?",
    "int-digit-count": "Vasya writes n on the board. Your task is to count the digits he writes.",
    "int-last-digit": "Your task is to find the units digit of the number n.",
    "int-reverse-digits": "Vasya reads the number n from right to left. Which number does he read "
    "(leading zeros are dropped)?",
    "int-sum-to-n": "On day i a shop sells i cakes. Your task is to count the cakes sold in the first n days.",
    "int-sum-even-to-n": "Your task is to find the total of every even number that lies in the range from 0 to n.",
    "int-factorial": "Your task is to count the ways to put n different books in a row.",
    "int-abs": "A frog sits at point n on a number line. Your task is to find its distance to point 0.",
    "int-sign": "The thermometer shows n degrees. Your task is to say which side of zero this lies on.",
    "int-divisible-by-k": "Can n candies be shared equally among {k} children, with none left over?",
    "int-mod-k": "n candies are shared equally among {k} children. Your task is to find how many candies "
    "are left over.",
    "int-count-divisors": "n soldiers must stand in equal rows. Your task is to count the possible row lengths.",
    "int-is-prime": "Your task is to check whether n has exactly two positive divisors.",
    "int-binary": "A computer stores the number n. Your task is to show the bits it stores, "
    "starting with the highest 1.",
    "int-count-ones": "A computer stores the number n in base 2. Your task is to count the bits that are on.",
    "int-power-of-two": "A cell splits into two every minute. Your task is to count the cells after n minutes.",
    # a pair a, b
    "pair-sum": "A lift on floor a moves b floors up (down when b is negative). Your task is to find where it stops.",
    "pair-diff": "Your task is to find how much a exceeds b (the answer may be negative).",
    "pair-product": "Your task is to print what you get when you scale the number a by the factor b.",
    "pair-absdiff": "Two houses stand at points a and b of a street. Your task is to find the distance "
    "between them.",
    "pair-max": "Two thermometers show a and b degrees. Your task is to find the higher reading.",
    "pair-min": "Two thermometers show a and b degrees. Your task is to find the lower reading.",
    "pair-div": "a candies are packed into bags of b. Your task is to count the full bags.",
    "pair-mod": "a candies are packed into bags of b. Your task is to count the candies that do not "
    "fill a bag.",
    "pair-compare": "Two thermometers show a and b degrees. Your task is to relate the first reading to "
    "the second with a comparison sign.",
    "pair-gcd": "Your task is to find the side of the largest square tile that covers an a by b floor "
    "exactly.",
    "pair-lcm": "One bus comes every a minutes, another every b minutes; both came just now. "
    "Your task is to say in how many minutes both come together again.",
    "pair-range-sum": "Your task is to find the total of every whole number from a up to b.",
    "pair-divides": "Can a candies be packed into bags of b with none left over?",
    "pair-power": "Your task is to multiply b copies of the number a together.",
    "pair-average": "Two friends have a and b coins. They pool them and split the sum into two equal "
    "whole shares. Your task is to find one share.",
    # a triple a, b, c
    "triple-sum": "Three thermometers show a, b and c degrees. Your task is to add up their readings.",
    "triple-max": "Three thermometers show a, b and c degrees. Your task is to find the highest reading.",
    "triple-min": "Three thermometers show a, b and c degrees. Your task is to find the lowest reading.",
    "triple-median": "Three thermometers show a, b and c degrees. Your task is to find the reading that "
    "lies between the other two.",
    "triple-triangle": "Vasya has three sticks of lengths a, b and c. Can he make a real triangle from them?",
    "triple-all-equal": "Three friends have a, b and c coins. Your task is to check whether they all have "
    "the same amount.",
    # a list a_1..a_n
    "list-sum": "On day i a purse gains a_i coins (loses them when a_i is negative). Your task is to find "
    "its total change.",
    "list-max": "Vasya measured the temperatures a_i. Your task is to find the warmest one.",
    "list-min": "Vasya measured the temperatures a_i. Your task is to find the coldest one.",
    "list-count-even": "Your task is to find how many a_i split into two equal whole halves.",
    "list-count-positive": "Vasya measured the temperatures a_i. Your task is to count the days above zero.",
    "list-count-greater-k": "A ride admits only children taller than {k}. The children's heights are a_i. "
    "Your task is to count those admitted.",
    "list-sort": "Your task is to line up the values a_i so that each is at most the next one.",
    "list-sort-desc": "Your task is to line up the values a_i so that each is at least the next one.",
    "list-reverse": "Your task is to print the sequence starting from its last element and ending with "
    "its first.",
    "list-range": "Vasya measured the temperatures a_i. Your task is to find the gap between the warmest "
    "and the coldest.",
    "list-sum-squares": "Your task is to take every a_i times itself and add up the results.",
    "list-distinct": "Vasya collects stamps; stamp i has number a_i. Your task is to count the different "
    "stamps he has.",
    "list-product": "Your task is to find what you get when all the a_i are multiplied together.",
    "list-count-k": "Vasya wrote down the numbers a_i. Your task is to count how many of them are {k}.",
    # a string s
    "str-reverse": "Vasya reads the word s from right to left. Your task is to print what he reads.",
    "str-upper": "The caps lock key is stuck. Your task is to print the word s as it gets typed.",
    "str-lower": "Your task is to print the word s with every capital letter made small.",
    "str-swapcase": "Your task is to print s with each small letter made capital and each capital made "
    "small.",
    "str-length": "Vasya typed the word s. Your task is to count the keys he pressed.",
    "str-count-vowels": "Your task is to count the letters of s that are one of a, e, i, o or u.",
    "str-remove-vowels": "A strict editor crosses out every a, e, i, o and u in the word s. "
    "Your task is to print what remains.",
    "str-palindrome": "Your task is to check whether the word s is the same when read from right to left.",
    "str-count-char-k": "Vasya typed the word s. Your task is to count how many times he pressed the key {k}.",
    "str-first-last": "Your task is to print the letter s starts with and then the letter s ends with.",
    "str-double-chars": "The keyboard repeats every key Vasya presses. Your task is to print what appears "
    "when he types s.",
    "str-count-upper": "Your task is to count the letters of s written in capitals.",
    "str-repeat-k": "Vasya types the word s, and then again, {k} times in all, without spaces. "
    "Your task is to print the result.",
    # a sentence s
    "words-count": "Vasya wrote the sentence s. Your task is to find how many words he wrote.",
    "words-longest": "Vasya wrote the sentence s. Your task is to find how many letters his longest word has.",
    "words-reverse-order": "Vasya reads the words of s starting from the last one. Your task is to print "
    "what he reads.",
    "words-title": "A headline needs a capital at the start of every word. Your task is to turn s into "
    "a headline.",
    "words-initials": "A company name is shortened to the first letters of its words, as capitals. "
    "Your task is to shorten s.",
}
