"""The channel selections of ResNet-50-2x (He et al., "Channel Pruning for Accelerating Very Deep Neural Networks",
ICCV 2017): which of its input channels each bottleneck's first 1x1 conv reads, one 0/1 mask per block (16), as Liu
et al. 2019 took them from He et al.'s released model.

Data, not code: ``models/filter.pkl`` of Eric-mingjie/rethinking-network-pruning, imagenet/regression-pruning,
commit 2ac473d70a09810df888e932bb394f225f9ed2d1 (a pickled list of 16 float32 numpy masks), written here as hex: mask
b has one bit per input channel of block b, channel 0 the most significant (``masks()`` decodes them).  Their sums
are the first entry of each block's triple in that commit's ``cfg_2x`` (35, 101, 97, ..., 1147).
"""
from __future__ import annotations

# (number of input channels, hex) per block, in forward order (layer1.0 .. layer4.2)
_HEX = (
    ('887f3eca89af5539'),
    ('202665089d54d39ad6499b888911a8895dc0c0b35db1a2f154c60018081a8644'),
    ('0a2128089e4ac31a5a484bc4e98588e0c9c5a2b80791e045e10065b08a198660'),
    ('026cef08df35d3be7e7963d879e755e56bc2c83a7f58db7d6c5177e441fa2e35'),
    ('2e2ec8dc484e123502c086a46028b19210502013c20b880289a4b4652a2414587ed60419842f6af12c547844be190640e778'
     '70463df41ce488afc80b6451cb2d'),
    ('0c1ef21f904e3e8110669420623c9790c07c4b05c08c6a5619ba10002e2400291ad04b014082c8d1084028312e93c3706e30'
     '6b842d5708b4ec2b20a7b4149af9'),
    ('3f0628dd3a6e1a6b167378fd7ef5f25c56a1641b16ebca5bdfb1d48abe25777bbf5c6f62b27c9dea6ee4cc421eddb746e411'
     '7c0e4f9d3dd1e9b59d97271da6ee'),
    ('dd6ba8df6b243f91d202f6a1906ffe41727de73706ec6c3ff5adc58b714ee74af95c5bf8fc9d5d2132a6ee420aaaf445ee92'
     '620f4c1d20ddeebaa7a2a73dae6b'),
    ('f60a7078510f5425a2b073970d9d01121d4402243591c2b5204b30622d854e55a165cbd83aa27512062d0fa4198442224d61'
     '2100d3a4221004ec806683f5cebac000624800f25ac0b64e9d08de416c45e0ae5d06472a62a521a0270a04eb87d824f05075'
     '62be2d396a042cbf80317c60f453501316318d3ee28824396161e234'),
    ('c200143916ae5425809c63d8b18597926c7542223211c09180123ce3c481c81088812c3a3020fe22cc6c4b54190c91046971'
     '6280f580535414cc20f2883dde6e94044042bac252c3f05c150056c0ed9ce0dcdc1e1b4ad0e740e015ba04e901102e61c863'
     '43aa4f116a042dff9031fd401c73143014310c7ce3a8341804c1c2bc'),
    ('d2582122376c554d9c25aa7797c5e796561340063111411140a259eb59a8451489813c252424f426c0f08a56b04cd00045e1'
     '15e53501d20c574c61bca1bdffeb841005543f831005f05c148c508044dec2a8061733e250a7496045934c6c1da40079e825'
     '4386c413734041d5c058d58e63731d0890206d6e7025f53700c3483d'),
    ('92714828602451ad80056a1494c6a3131d00482235118909c036c9da998148a2998cb80181bed40e8473ca17501cd4054969'
     '28a347815abc4044006e8a3cfccda6814252ee53b015b0141480c8a8c71ed4180e57c34251e04184059209081da12a54ee37'
     '5e87e79bba00c5dddcc4d58ac140597016024664f6a606cd0a07d835'),
    ('d7a865ffd53fb7afe26ffd95fdbff38abf44900a77d7c327a179e5153dc35e57cda062bc81caff269ef7e6ff52c75e275f6a'
     'e943c1c8781dcefe9466e39acef4f8c877fffe7d7c095cc88608ae5cecd6eafc1c0cef0ec1edef970fabca473d983e76e966'
     'f7d3971f726207efdd8f7d6cf0e6751a76ff5ddaa6961eeb3660e970'),
    ('dfb071fbf63efd8fa227263dccc7caf71f0a9e1870271b27c173eae7ffc9df51bf18eb80814cdce3dc67ea5652b45a3c5fa2'
     'a943f7fe2a9cc35e9077ff59cfedaeef3d6becfff49d37c1863ce79d0cedc6fe9e5ff7d6c979e5265ce897452feb3bdaabe6'
     'ee8d37bf5b6915fc536dd5fc8e8455f67ee77ef5e6833aef4367cfac'),
    ('d2b0bdb5779f0e7abbaf8783ffa755f930bff9411ad9b6751dad11ff779ba2860f52bf277fab8595f3d42f4714d32f5e6a98'
     '59dd57bcddcefe36eff77cf792b7aeffca6b261baa395adb1f1c1c6bf6bbfb249739ff97c0ff5ed28b3efff75f5d7b6cba7f'
     '39fa6d9cbfcfd0415663753a4fd1c0774c78f231839a8ad0bd4816db5d635fcfccbd7736f066ef9dff4adb8fb5cb03c1f7c3'
     '17d7fc1e95687470eb127f237b0a5ef7c74d5dadaa13ba6b3770aa60f4fff57b677e59be56bf04866e4fa47eb4f7effe1233'
     '6754497fb3dd38f27e3dd0675cfa2d9aa2c5ffcf7e893f84fd9eee4f7de7721ce17b67f7965aeecb7afdfb44b2763fcd99fd'
     '439796267e5f'),
    ('8ef82f3233bf8b7efaeec0c09c8e32fbb2ae5c8c08ccf157079f1d9d73f80812e6bebd654c6b15eb714c1e479ddd452f7a38'
     'caeb2a74df237e8fed777cffb62834119bca7e9895370a02d99def8bff515efc961f669b91160c34a989b2b2795c69685d4c'
     '3d74247c6e6f6bd7c534f6321cfd663dc5f4fa77e3aacd762faa3ab34fe288624d8efb432cdece597756359b2d84e72f315a'
     '34bf5f6a7968357632c8db1db35c4b9def1c79a6e113b7bd93c6a3e1faff5b6343f85924d79746b24eafa7fd3cbbe75f09df'
     '66d00b3afd457056737e0c774ebfc46a9ec357ef0104c391f79eef6e5dff66a7616ff78ff58fa60d73f4d857e275f79719dd'
     'd8cb3216ff9d'),
)
_CHANNELS = (64, 256, 256) + (256,) + (512,) * 3 + (512,) + (1024,) * 5 + (1024,) + (2048,) * 2


def masks() -> list[list[int]]:
    """One 0/1 list per block, its length the block's input channels."""
    out = []
    for n, parts in zip(_CHANNELS, _HEX):
        h = "".join(parts) if isinstance(parts, tuple) else parts
        out.append([int(b) for b in bin(int(h, 16))[2:].zfill(n)])
    return out
